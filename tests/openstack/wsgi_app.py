"""The WSGI application of one OpenStack service, for gunicorn.

Keystone, Glance and Cinder parse ``sys.argv`` with oslo.config when their WSGI
module is imported, so gunicorn's own flags would reach them and stop them. This
module replaces ``sys.argv`` with the service's own arguments (from
``STALECAST_WSGI_ARGS``) before it imports the service named by
``STALECAST_WSGI_SERVICE``.
"""

import os
import shlex
import sys

_SERVICE = os.environ["STALECAST_WSGI_SERVICE"]
sys.argv = [_SERVICE] + shlex.split(os.environ.get("STALECAST_WSGI_ARGS", ""))

if _SERVICE == "keystone":
    # Keystone 30 no longer ships keystone-wsgi-public: its app is this module's.
    from keystone.wsgi.api import application  # noqa: E402,F401
elif _SERVICE == "glance":
    from glance.wsgi.api import application  # noqa: E402,F401
elif _SERVICE == "cinder":
    from cinder.wsgi.api import application  # noqa: E402,F401
else:
    raise SystemExit(f"unknown service {_SERVICE!r}")
