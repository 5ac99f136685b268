from planrunner.cli import main

raise SystemExit(main())
