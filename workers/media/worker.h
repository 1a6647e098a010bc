#pragma once
// wafleet-media as a worker on the skeleton (common/worker.h): its options, its typed config
// and its core (the shared consumer loop over wa.inbound, media.cpp's Fetcher per record).
#include <string>
#include <vector>

#include "common/config.h"
#include "common/worker.h"
#include "workers/media/media.h"

namespace wafleet::media {

struct WorkerConfig {
  Options fetch;
  bool s3 = false;
  S3Options s3_options;
  std::string storage_dir;
  int attempts = 5;
  std::chrono::milliseconds backoff{500};
};

// The S3 settings (WAFLEET_S3_*), shared with the sender, which uploads stored media.
std::vector<config::Option> s3_options();
S3Options parse_s3(const config::Settings& s, const std::string& staging_dir);

// Pure: every problem appended to errors.
WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors);
worker::Spec spec();

}  // namespace wafleet::media
