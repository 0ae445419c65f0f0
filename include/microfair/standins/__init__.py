"""Local stand-ins for the outside services, for demos and tests: nothing here talks to a real service.

``make demo`` and the test suite run the deposit and iRODS stages against these instead of the
real BioImage Archive, DataCite, iRODS, Dataverse, Zenodo and eLabFTW servers, so that the whole life cycle runs on one machine
without accounts or network:

* :mod:`microfair.standins.biostudies`: the BioStudies submission API (HTTP) and its FTP upload server
  (pyftpdlib) on 127.0.0.1, with fault injection; the accessions it hands out are not real ones.
* :mod:`microfair.standins.datacite`: the DataCite REST API (``/dois``, ``/clients``) on 127.0.0.1.
* :mod:`microfair.standins.dataverse`: the Dataverse native API (Recherche Data Gouv) on 127.0.0.1.
* :mod:`microfair.standins.zenodo`: Zenodo's deposition REST API on 127.0.0.1.
* :mod:`microfair.standins.elabftw`: the eLabFTW REST API v2 (entries and their comments) on 127.0.0.1.
* :mod:`microfair.standins._http`: what the HTTP stand-ins share (a threaded server on 127.0.0.1,
  JSON answers, injected 5xx and connection resets).
* :mod:`microfair.standins.irods`: a recording stand-in for the python-irodsclient session surface
  that ``IrodsStore`` uses, and ``check_server_behaviour``, the contract that the stand-in and a
  live iRODS zone both pass.
* :mod:`microfair.standins.irods_session`: a session factory over that stand-in whose zone persists
  in a file between tasks, registered as the entry point ``standin`` of the group
  ``microfair.irods_sessions`` (select it with the iRODS connection extra ``"session_factory": "standin"``).

A facility never configures these in production: its connections point at the real services.
"""
