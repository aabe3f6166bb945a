#!/usr/bin/env bash
# The README's run command. Until the gateway's `demo` lands, this builds Portcullis,
# validates the example Odoo policy and dry-runs calls against it: ten pipeline runs pass, the
# eleventh in the same minute is denied, a bill can be run twice an hour, the delete tool is
# hidden, and the catch-all executor refuses to post invoices.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q -p portcullis
bin=target/release/portcullis
policy=examples/policies/odoo.json

echo "\$ portcullis validate $policy"
$bin validate "$policy"
echo
echo "\$ portcullis check --policy examples/policies/ai_invoice_pipeline_run.json --tool ai_invoice_pipeline_run --times 11"
$bin check --policy examples/policies/ai_invoice_pipeline_run.json --tool ai_invoice_pipeline_run --times 11 || true
echo
echo "\$ portcullis check --policy $policy --tool ai_invoice_pipeline_run --args '{\"move_id\": 42}' --times 3"
$bin check --policy "$policy" --tool ai_invoice_pipeline_run --args '{"move_id": 42}' --times 3 || true
echo
echo "\$ portcullis check --policy $policy --tool odoo_unlink"
$bin check --policy "$policy" --tool odoo_unlink || true
echo
echo "\$ portcullis check --policy $policy --tool odoo_execute --args '{\"model\":\"account.move\",\"method\":\"action_post\"}'"
$bin check --policy "$policy" --tool odoo_execute --args '{"model":"account.move","method":"action_post"}' || true
