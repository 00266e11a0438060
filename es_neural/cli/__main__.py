from es_neural.cli import app

app()
