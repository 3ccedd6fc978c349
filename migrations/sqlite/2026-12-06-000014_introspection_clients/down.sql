DROP TABLE introspection_clients;
