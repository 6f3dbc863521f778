"""WSGI entry point: ``gunicorn -k gevent -w 1 pulseboard.wsgi:app``.

gevent must patch the standard library before anything else imports socket,
ssl or threading, or those modules keep blocking versions and one slow call
stalls every connection in the process.
"""

from gevent import config as gevent_config
from gevent import monkey

monkey.patch_all()
# Every connection spawns greenlets; recording who spawned each (a debugging
# aid) would keep a few KB of stack summary alive per connection.
gevent_config.track_greenlet_tree = False

import sys  # noqa: E402

from pulseboard import ConfigError, create_app  # noqa: E402  (must follow the patching)

try:
    app = create_app()
except ConfigError as error:
    # One line naming the variable beats a traceback in the journal.
    print(f"pulseboard: configuration error: {error}", file=sys.stderr, flush=True)
    # 3 is gunicorn's "worker failed to boot": the master stops instead of respawning.
    sys.exit(3)

from pulseboard.events.bus import is_embedded  # noqa: E402

if is_embedded(app.config["BROKER_URL"]):
    # Embedded mode: no RabbitMQ, so the consumer lives in this process.
    from pulseboard.events.service import start_embedded

    start_embedded(app)
