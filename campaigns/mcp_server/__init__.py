"""Herald's MCP server: the campaign tools for AI agents (docs/api.md, "MCP").

Another door, like the REST API and the console: every tool validates with the API's
validators, acts through the API's services and answers the API's JSON; its input and
output schemas are cut from the OpenAPI document (`schemas.py`), so a tool and its
operation cannot drift. `tools.py` is the tool table, `server.py` the SDK server
bound to one project, `http.py` the streamable HTTP door at /mcp (a Django view)
and `manage.py mcp_server` the stdio door.
"""
