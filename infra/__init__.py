"""The thin cdktf entry of this checkout: ``cdktf.json`` runs ``python -m infra``.

The app itself ships in the package as :mod:`lepton_cdk.app` (settings in
:mod:`lepton_cdk.app.config`), so an installed wheel runs the same app with
``python -m lepton_cdk.app``.
"""
