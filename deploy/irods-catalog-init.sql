-- ICAT catalog for the throw-away iRODS test zone (docker compose --profile irods-test).
-- The role and password are the ones baked into the upstream irods/irods_demo provider image
-- (irods_catalog_provider/unattended_install.json); this server holds test data only.
CREATE USER irods WITH PASSWORD 'testpassword';
CREATE DATABASE "ICAT" OWNER irods;
GRANT ALL PRIVILEGES ON DATABASE "ICAT" TO irods;
