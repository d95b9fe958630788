"""Command-line front ends: ``nexus`` for people, ``nexusctl`` for scripts."""
