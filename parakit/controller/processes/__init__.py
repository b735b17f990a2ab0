"""Processes seen from outside: launching a graded child (``launch``), watching it and its
workers (``observe``, ``cputime``), process trees and their cleanup (``proctree``), shared
memory (``shm``), and other hosts (``hosts``, ``probe``).
"""
