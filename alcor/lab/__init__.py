"""A lab of simulated hosts on one machine (root): ``topology`` builds hosts and workloads as
network namespaces, ``stack`` runs ``alcor server`` and one ``alcor agent`` per host on them,
``demo`` is ``alcor demo``.  Used by the fullstack tests, the demo and the W6 benchmark."""
