"""The process around the pipeline: Kopf wiring (handlers only route), the watches' cache,
the work queue, the API client, leader election, health and metrics."""
