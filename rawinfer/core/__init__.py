"""The shared core: typed settings (read once) and the model catalog."""
