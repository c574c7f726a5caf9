from marketpulse.cli import main

raise SystemExit(main())
