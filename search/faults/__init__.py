"""What a long sweep meets: a full disk (full_storage.py), cut files (repair.py), a Ray state that cannot be restored
(rebuild.py), and a trial that continues in its own folder (continued.py)."""
