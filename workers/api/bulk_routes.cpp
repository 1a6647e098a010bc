// /v1/bulk/jobs: campaigns over HTTP, with the same checks, estimate and commands as
// `wafleet bulk` (workers/bulk/control.h).
#include <set>
#include <sstream>

#include "common/clock.h"
#include "common/json_util.h"
#include "common/log.h"
#include "workers/api/api.h"

namespace wafleet::api {

using Json = nlohmann::json;
namespace bhttp = boost::beast::http;

namespace {

http::Response json_of(const http::Request& req, unsigned status, const Json& body) {
  return http::make_json_response(req, status, json::dump(body));
}

http::Response unavailable(const http::Request& req, const Error& e) {
  if (e.kind == ErrorKind::kInvalidInput) {
    return error_response(req, 422, "invalid_request", e.message);
  }
  log::warn("api.bulk_backend_failed", {{"error", e.message}});
  return error_response(req, 503, "unavailable", e.message);
}

// The job spec of a POST body; problems named by field.
std::vector<std::string> spec_of(const Json& body, bulk::JobSpec& spec, std::string& schedule,
                                 std::string& table, bool& dry_run) {
  std::vector<std::string> problems;
  static const std::set<std::string> known = {"phone_number_id", "template", "language", "name",
                                              "category", "schedule", "quiet_hours", "dry_run",
                                              "recipients", "csv"};
  for (const auto& [k, v] : body.items()) {
    if (known.count(k) == 0) {
      problems.push_back(k + ": not a field of a bulk job");
    } else if (k == "dry_run" ? !v.is_boolean() : k == "recipients" ? !v.is_array() : !v.is_string()) {
      problems.push_back(k + (k == "dry_run" ? ": true or false" : k == "recipients" ? ": an array of rows" : ": a string"));
    }
  }
  if (!problems.empty()) {
    return problems;
  }
  spec.phone_number_id = body.value("phone_number_id", "");
  spec.template_name = body.value("template", "");
  spec.language = body.value("language", "");
  spec.name = body.value("name", "");
  spec.category = body.value("category", "marketing");
  spec.quiet_hours = body.value("quiet_hours", "");
  schedule = body.value("schedule", "");
  dry_run = body.value("dry_run", false);
  if (body.contains("recipients") == body.contains("csv")) {
    problems.push_back("recipients: give the rows as recipients (an array of objects) or csv (text), one of them");
  } else {
    table = body.contains("csv") ? body["csv"].get<std::string>() : body["recipients"].dump();
  }
  auto more = bulk::check_spec(spec, schedule);
  problems.insert(problems.end(), more.begin(), more.end());
  return problems;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) {
    out += (out.empty() ? "" : "; ") + i;
  }
  return out;
}

}  // namespace

http::Response Api::bulk_jobs(const http::Request& req, Session& session, const std::string& path,
                              const std::string& who) {
  if (!bulk_ || bulk_->producer == nullptr || session.redis == nullptr) {
    return error_response(req, 501, "not_configured", "bulk jobs need Kafka and Redis on this API");
  }
  bulk::Store store(*session.redis);
  const auto method = req.method();
  constexpr std::string_view kJobs = "/v1/bulk/jobs";
  const std::string rest = path.size() > kJobs.size() ? path.substr(kJobs.size() + 1) : "";
  if (rest.empty()) {
    if (method == bhttp::verb::get) {
      auto jobs = store.list(200);
      if (!jobs) {
        return unavailable(req, jobs.error());
      }
      Json items = Json::array();
      for (const auto& j : *jobs) {
        items.push_back(j.to_json());
      }
      return json_of(req, 200, Json{{"items", items}});
    }
    if (method != bhttp::verb::post) {
      return method_not_allowed(req, "GET, POST");
    }
    if (req.body().size() > limits_.max_bulk_body_bytes) {
      return error_response(req, 413, "too_large", "the job is over " + std::to_string(limits_.max_bulk_body_bytes) + " bytes");
    }
    Json body = json::parse(req.body());
    if (body.is_discarded() || !body.is_object()) {
      return error_response(req, 400, "invalid_json", "the body is not a JSON object");
    }
    bulk::JobSpec spec;
    std::string schedule;
    std::string table;
    bool dry_run = false;
    if (auto problems = spec_of(body, spec, schedule, table, dry_run); !problems.empty()) {
      return error_response(req, 422, "invalid_request", joined(problems));
    }
    const int64_t now = wall_clock_ms();
    auto prepared = bulk::prepare(store, spec, table, bulk_->pacing, now);
    if (!prepared) {
      return unavailable(req, prepared.error());
    }
    if (dry_run) {
      return json_of(req, 200, Json{{"dry_run", true}, {"summary", prepared->summary()}});
    }
    if (auto st = bulk::launch(store, *bulk_->producer, *prepared, "api:" + who, now); !st) {
      return unavailable(req, st.error());
    }
    auto job = store.job(prepared->spec.id);
    if (!job || !*job) {
      return unavailable(req, job ? Error::transient("the job vanished after it was stored") : job.error());
    }
    log::info("api.bulk_created", {{"job_id", prepared->spec.id}, {"by", who},
                                   {"people", prepared->validated.recipients.size()}});
    return json_of(req, 201, Json{{"job", (*job)->to_json()}, {"summary", prepared->summary()}});
  }
  // /v1/bulk/jobs/{id}[/verb]
  const size_t slash = rest.find('/');
  const std::string id = rest.substr(0, slash);
  const std::string verb = slash == std::string::npos ? "" : rest.substr(slash + 1);
  if (!bulk::valid_job_id(id)) {
    return error_response(req, 404, "not_found", "no bulk job " + id + " (ids are bj_ and 16 hex digits)");
  }
  auto job = store.job(id);
  if (!job) {
    return unavailable(req, job.error());
  }
  if (!*job) {
    return error_response(req, 404, "not_found", "no bulk job " + id);
  }
  if (verb.empty()) {
    if (method != bhttp::verb::get) {
      return method_not_allowed(req, "GET");
    }
    return json_of(req, 200, (*job)->to_json());
  }
  if (verb == "report") {
    if (method != bhttp::verb::get) {
      return method_not_allowed(req, "GET");
    }
    const std::string format = http::query_param(req, "format");
    if (!format.empty() && format != "csv" && format != "json") {
      return error_response(req, 400, "invalid_request", "format: csv or json");
    }
    std::ostringstream out;
    auto st = format == "csv" ? bulk::report_csv(store, **job, out) : bulk::report_json(store, **job, out);
    if (!st) {
      return unavailable(req, st.error());
    }
    return http::make_response(req, 200, out.str(), format == "csv" ? "text/csv" : "application/json");
  }
  if (verb != "pause" && verb != "resume" && verb != "cancel" && verb != "retry-failed") {
    return error_response(req, 404, "not_found", "no such path: see /v1/openapi.json");
  }
  if (method != bhttp::verb::post) {
    return method_not_allowed(req, "POST");
  }
  if (const std::string refused = bulk::refusal(**job, verb); !refused.empty()) {
    return error_response(req, 409, "conflict", id + " is " + bulk::to_string((*job)->state) + ": " + refused);
  }
  if (auto st = bulk::send_command(store, *bulk_->producer, id, verb, "api:" + who, wall_clock_ms()); !st) {
    return unavailable(req, st.error());
  }
  auto now = store.job(id);
  Json answer = {{"command", verb}, {"accepted", true}};
  answer["job"] = now && *now ? (*now)->to_json() : (*job)->to_json();
  return json_of(req, 202, answer);
}

}  // namespace wafleet::api
