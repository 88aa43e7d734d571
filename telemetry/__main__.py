from telemetry.cli import main

raise SystemExit(main())
