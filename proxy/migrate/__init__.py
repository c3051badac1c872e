"""The operator's tools for the route map and WorkOS: import, edit, explain, check (command line only)."""
