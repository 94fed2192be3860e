"""Compatible front doors: other push services' request shapes, translated onto
Herald's validators and services (docs/api.md, "Compatible requests"). A door owns
only the translation; every check of a campaign, a targeting or a push is the one
Herald makes everywhere."""
