from stemcat.cli.app import app

app()
