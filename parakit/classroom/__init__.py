"""Grading a class: submissions in, a gradebook out.

- ``submission``: one submission graded in a ``pytest`` process of its own, in a sandbox of its
  own, with a time limit; what it got (``Graded``), kept as JSON beside its reports.
- ``gradebook``: the class's CSV, unique names for the submissions.
- ``engines``: where the gradings run, behind one small interface: ``Local`` (a few at once on
  this machine) and ``Slurm`` (one job array for the class, ``parakit.classroom.slurm``).

Every engine runs the same one-submission grading, so a class gets the gradebook it would get
graded one by one.
"""
