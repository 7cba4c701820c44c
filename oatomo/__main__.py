from oatomo.cli import main

raise SystemExit(main())
