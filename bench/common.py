"""What the benchmark scripts share."""


def recreate_database(url: str) -> None:
    """Drops and creates the database named in `url`: each benchmark starts from nothing."""
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
