"""Stand-ins for outside systems (one per system), shared by every test package."""
