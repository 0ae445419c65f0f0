"""Local stand-ins for the outside services (BioStudies, DataCite, an iRODS session), used by the tests and the demo."""
