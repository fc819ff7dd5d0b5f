from otel_judge.cli import main

raise SystemExit(main())
