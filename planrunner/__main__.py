from planrunner.launch import run

raise SystemExit(run())
