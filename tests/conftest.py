pytest_plugins = ["tests.zookeeper_fixture"]
