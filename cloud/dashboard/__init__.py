"""The operator dashboard: one web page of the live city, served beside the gRPC API."""
