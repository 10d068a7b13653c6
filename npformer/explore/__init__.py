"""`npformer explore`: a model you trained, opened up in a local web page.

  views.py    what each view shows, as JSON-able dicts computed by npformer's own code
  runs.py     a training run's log.jsonl as it grows, and its checkpoints
  server.py   the HTTP layer (standard library only): the page's files and JSON endpoints
  sources.py  the files each view links to (read once at start, shown in the source panel)
  command.py  the command: load the models, bind to 127.0.0.1, serve until Ctrl-C
  static/     the page: index.html, app.js, style.css (no library, nothing downloaded)

docs/explore.md shows each view and says what it computes.
"""
