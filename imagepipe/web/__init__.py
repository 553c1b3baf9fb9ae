"""The HTTP face, the plain part (no nameko): what the gateway reads and answers.

- ``uploads``: reading an upload out of a request, within limits;
- ``api``: the JSON shapes of the answers;
- ``openapi``: the API's description (``openapi.yaml``), served and tested;
- ``page`` and ``static/``: the web page;
- ``live``: who waits for which image, and the event stream they read.
"""
