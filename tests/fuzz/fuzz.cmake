# tests/fuzz/fuzz.cmake - libFuzzer targets (see README.md). Configured only with
# -DDBLD_FUZZ=ON and clang (`./dev build --fuzz`, into ./build-fuzz), included by
# the top-level CMakeLists.txt, which instruments every library for coverage,
# ASan and UBSan in that mode. A target fuzz_X.c links the libraries, and
# fuzz_req_<svc>.c also the sources of services/<svc> except main.c.

function(dbld_fuzz_target name)
  add_executable(${name} ${CMAKE_CURRENT_LIST_DIR}/${name}.c ${ARGN})
  target_compile_options(${name} PRIVATE ${DBLD_WARN})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  target_include_directories(${name} PRIVATE ${CMAKE_CURRENT_LIST_DIR})
  target_compile_definitions(${name} PRIVATE DBLD_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  target_link_libraries(${name} PRIVATE dbld_evclient dbld_rpc dbld_config dbld_json dbld_db dbld_proc)
endfunction()

foreach(t json joblog config rxoverlap text_array wire)
  dbld_fuzz_target(fuzz_${t})
endforeach()

# A job's output through the wrapper: services/job/joblog.c on its own.
target_sources(fuzz_joblog PRIVATE ${CMAKE_SOURCE_DIR}/services/job/joblog.c)
target_include_directories(fuzz_joblog PRIVATE ${CMAKE_SOURCE_DIR}/services/job)

# fuzz_req_<svc>: the service's sources except main.c, for its method tables
# and the validation its handlers run.
foreach(svc eventlog job graph query)
  file(GLOB svc_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/services/${svc}/*.c)
  list(FILTER svc_srcs EXCLUDE REGEX "/main\\.c$")
  dbld_fuzz_target(fuzz_req_${svc} ${svc_srcs})
  target_include_directories(fuzz_req_${svc} PRIVATE ${CMAKE_SOURCE_DIR}/services/${svc})
endforeach()
target_sources(fuzz_req_eventlog PRIVATE ${GEN_DIR}/migrations.c)
# The query service's partition index decodes events as the event log does.
target_sources(fuzz_req_query PRIVATE ${CMAKE_SOURCE_DIR}/services/eventlog/event_meta.c)
target_include_directories(fuzz_req_query PRIVATE ${CMAKE_SOURCE_DIR}/services/eventlog)
