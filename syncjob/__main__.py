from syncjob.cli import main

raise SystemExit(main())
