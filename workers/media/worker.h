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

// Pure: every problem appended to errors.
WorkerConfig parse_config(const config::Settings& s, std::vector<std::string>& errors);
worker::Spec spec();

}  // namespace wafleet::media
