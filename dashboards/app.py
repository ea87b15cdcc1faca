"""The brokerkit dashboard for `panel serve dashboards/app.py` (`brokerkit serve` does the same,
with sign-in and a safe default address).

`panel serve` runs no brokerkit sign-in, so this serves local mode only: `--address 127.0.0.1`
(Panel's default, all addresses, is refused), a browser on this machine, no proxy, and no
`[serve]` sign-in configured. Any other session gets a page saying why, and nothing of the app
(`brokerkit.serve.served_access`). To serve it to other machines, configure sign-in in
`[serve]` and run `brokerkit serve --host ADDRESS`.
"""

from brokerkit.ui.app import create_app

create_app().servable()
