"""The cabinet dashboard: a web page, served by the gateway, that shows the street live and acts on it.

- :mod:`gateway.dashboard.server`: :class:`Dashboard`, the part the daemon starts (``[dashboard]``);
- :mod:`gateway.dashboard.app`: the routes (aiohttp): login, the page, the event stream, commands;
- :mod:`gateway.dashboard.auth`: passwords (argon2), sessions, CSRF tokens, the failed-login limit;
- :mod:`gateway.dashboard.feed`: the live state shared by every browser, as server-sent events;
- :mod:`gateway.dashboard.view`: what is shown of each node (state, alarms, values with units);
- :mod:`gateway.dashboard.history`: the bounded SQLite history behind the plots;
- :mod:`gateway.dashboard.commands`: the page's commands, signed with the local operator key.

The page itself (``static/``) is plain HTML, CSS and JavaScript shipped in the package: no CDN, no build.
"""

from gateway.dashboard.server import Dashboard

__all__ = ["Dashboard"]
