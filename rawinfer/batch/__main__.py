from rawinfer.batch import main

raise SystemExit(main())
