"""What a resource becomes: the registry of child kinds, their rendering from Jinja2
templates, the pod's security context, placement and the launcher's sources."""
