"""A fleet's app host with backup_postgresql_host backs up the database server as the app connects to it: the backup
role joins its roles, with the app's database role, its password and the client certificate site.yml's client play
issued (in <app_config_dir>/pki under the postgresql role's fixed names); the other app hosts and the database host
are as before."""

from __future__ import annotations

from wiring_probe import probe

PROBE = """
- name: Remote database backup probe
  hosts: pyfleet
  gather_facts: false
  connection: local
  vars:
    app_name: shop
    app_port: 8000
    postgresql_users: [{name: shop, password: the-db-password}]
    postgresql_databases: [{name: shop, owner: shop}]
    app_config_dir: /etc/shop
  tasks:
    - name: What the backup role would get
      ansible.builtin.debug:
        msg: "PROBE {{ {'backup': 'backup' in __pyfleet_roles, 'host': backup_postgresql_host | default(''),
                        'user': backup_postgresql_user, 'password': backup_postgresql_password,
                        'tls': [backup_postgresql_sslrootcert, backup_postgresql_sslcert, backup_postgresql_sslkey]}
                     | to_json }}"
"""
INVENTORY = {"all": {"children": {
    "pyfleet": {"hosts": {
        "app1": {"ansible_host": "10.0.0.11", "backup_postgresql_host": "10.0.0.5"},
        "app2": {"ansible_host": "10.0.0.12"},
        "db": {"ansible_host": "10.0.0.5"}}},
    "pyfleet_app": {"hosts": {"app1": None, "app2": None}},
    "pyfleet_postgresql": {"hosts": {"db": None}},
}}}


def test_only_the_named_app_host_backs_up_the_database_server_with_the_apps_credentials(tmp_path):
    found = probe(tmp_path, PROBE, INVENTORY)
    assert found["app1"] == {"backup": True, "host": "10.0.0.5", "user": "shop", "password": "the-db-password",
                             "tls": ["/etc/shop/pki/ca.crt", "/etc/shop/pki/client.crt", "/etc/shop/pki/client.key"]}
    assert found["app2"]["backup"] is False and found["app2"]["host"] == ""
    # The database host backs itself up locally, as before: no remote settings.
    assert found["db"] == {"backup": True, "host": "", "user": "", "password": "", "tls": ["", "", ""]}
