"""Plain helpers with no domain imports: errors, time formatting."""
