"""The control API on a Unix socket: how the TUI, ``nexusctl`` and ``nexus`` run the daemon.

``client.py`` is import-light on purpose (httpx only): the CLIs import it, never the server.
"""
