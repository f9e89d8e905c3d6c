"""What a sweep leaves on storage, one owner per file kind: locations and whole writes, assets, checkpoints, trial
reports and the sweep's own records. Imports trainables, never search or analysis."""
