"""Stage 5: what leaves the library for people and other programs: CSV and JSON export, the
score picture, and writing several outputs all or nothing."""
