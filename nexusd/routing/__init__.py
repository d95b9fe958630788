"""Routing: from a request's needs to one backend, explained (F06–F08)."""
