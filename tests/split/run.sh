#!/usr/bin/env bash
# Runs the black-box HTTP and WebSocket tests against the split deployment: brings it up
# (scripts/split-deployment.sh), points the test harness at its proxy (TODO_TEST_BASE_URL,
# TODO_TEST_JWT_SECRET), runs the subset with cargo nextest, and brings it down.
#
#   tests/split/run.sh [NEXTEST ARGS...]
#
# TODO_BIN picks the binary the deployment runs (default: the debug build, built here);
# TODO_BUS, DATABASE_URL and the other settings of split-deployment.sh apply as there.
set -euo pipefail
cd "$(dirname "$0")/../.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/todo-target}"
run() { printf '+ %s\n' "$*"; "$@"; }

# The test binaries whose tests talk to their server only over HTTP and WebSocket.
binaries=(api edges smoke events readiness cors)

# Tests of those binaries that cannot run against a deployment, by reason. Each of them
# fails loudly if run against one (the harness refuses), so a new test of that kind shows
# up here rather than passing against a server of its own.
excluded=(
  # They start a server of their own with settings of their own (CORS origins, webhooks,
  # request timeout, a subset of services, ping interval, queue size, restarts).
  api::a_process_running_only_api_documents_the_routes_of_every_service
  cors::a_preflight_from_an_allowed_origin_is_answered_on_every_route_without_a_token
  cors::a_preflight_from_another_origin_gets_no_cors_headers_and_stays_a_405
  cors::a_websocket_handshake_from_an_allowed_origin_or_without_one_upgrades
  cors::a_websocket_handshake_from_an_origin_that_is_not_allowed_is_refused_with_403
  cors::an_allowed_origin_can_read_location_etag_and_the_request_id_of_an_actual_request
  cors::preflights_are_counted_and_logged_under_their_route
  events::a_hanging_webhook_receiver_does_not_delay_another_tasks_reminder
  events::a_process_running_api_and_audit_serves_only_their_routes
  events::a_reminder_that_falls_due_while_the_server_is_down_is_delivered_once_after_restart
  events::a_slow_client_is_closed_with_1008_while_a_reading_client_of_the_same_user_gets_everything
  events::a_webhook_receiver_failing_twice_gets_exactly_three_attempts
  events::a_webhook_receiver_that_always_fails_is_given_up_after_the_configured_attempts
  events::server_pings_keep_an_answering_client_connected_and_drop_a_silent_one
  events::sigterm_on_an_idle_server_always_exits_well_within_the_shutdown_timeout
  events::the_webhook_post_is_signed_and_carries_the_reminder_due_cloudevent
  readiness::a_request_that_runs_past_the_timeout_is_a_503_problem_not_a_hang
  # They start the binary themselves to see it refuse bad settings.
  cors::a_bad_origin_setting_stops_the_start_with_a_message_naming_it
  events::an_unknown_service_name_or_bad_listen_address_stops_the_binary_with_a_message
  # They read the server's log lines.
  api::a_missing_x_request_id_is_generated_returned_and_logged
  api::an_incoming_x_request_id_is_echoed_and_carried_by_the_requests_log_lines
  api::secrets_and_tokens_never_appear_in_responses_metrics_or_logs
  # They stop the server (SIGTERM) and watch it exit.
  api::every_request_line_is_written_whole_before_a_graceful_exit
  events::sigterm_closes_sockets_with_1001_finishes_in_flight_requests_and_exits_cleanly
  # They read, write or lock the server's SQLite file.
  events::a_series_whose_next_due_date_would_pass_the_year_9999_ends_without_a_next_occurrence
  events::events_consumers_cannot_handle_are_kept_counted_and_logged_and_later_events_still_flow
  events::a_log_row_that_is_no_cloudevent_is_kept_by_every_consumer_and_later_events_flow
  events::a_consumer_whose_write_fails_logs_each_attempt_and_catches_up_once_it_works
  readiness::readyz_fails_naming_the_writer_while_writes_are_stuck_though_reads_answer
  readiness::a_write_stalled_past_the_threshold_is_logged_as_a_slow_commit
  # nginx refuses a NUL (%00) in the path with a 400 problem before any service sees it;
  # the test expects the service's 401.
  edges::a_token_whose_subject_holds_a_control_character_is_refused
)

filter=""
for name in "${binaries[@]}"; do
  filter+="${filter:+ | }binary(=$name)"
done
filter="($filter)"
for name in "${excluded[@]}"; do
  filter+=" & !(binary(=${name%%::*}) & test(=${name#*::}))"
done

if [[ -z ${TODO_BIN:-} ]]; then
  run cargo build --locked --bin todo
  export TODO_BIN="$CARGO_TARGET_DIR/debug/todo"
fi

dir="$(mktemp -d)"
finish() {
  local status=$?
  scripts/split-deployment.sh down "$dir" || status=1
  if [[ $status -eq 0 ]]; then
    rm -rf "$dir"
  else
    echo "split run failed; the deployment's logs are kept in $dir/logs" >&2
  fi
  exit "$status"
}
trap finish EXIT
run scripts/split-deployment.sh up "$dir"

base_url="" secret=""
while IFS='=' read -r key value; do
  case $key in
    BASE_URL) base_url=$value ;;
    TODO_JWT_SECRET) secret=$value ;;
  esac
done <"$dir/env"

echo "+ TODO_TEST_BASE_URL=$base_url TODO_TEST_JWT_SECRET=... cargo nextest run --locked -p todo ${binaries[*]/#/--test } -E '<the subset>' $*"
echo "  (${#excluded[@]} tests excluded; see the list in $0)"
args=()
for name in "${binaries[@]}"; do
  args+=(--test "$name")
done
TODO_TEST_BASE_URL="$base_url" TODO_TEST_JWT_SECRET="$secret" \
  cargo nextest run --locked -p todo "${args[@]}" -E "$filter" "$@"
