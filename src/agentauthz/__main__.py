import sys

from agentauthz.cli import main

sys.exit(main())
