"""The city store: its interface (``interface.py``, start here), the statements both engines
share, SQLite and PostgreSQL, their migrations.
"""
