from rawinfer.cli import main

raise SystemExit(main())
