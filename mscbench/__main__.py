from mscbench.cli import main

raise SystemExit(main())
