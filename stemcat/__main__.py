from stemcat.cli import app

app()
