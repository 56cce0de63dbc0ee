/* db_domain.c - the domain predicates of db_domain.h (one definition each;
 * their SQL spellings are in the header, tied to the same enums). */
#include "dbld/db_domain.h"

int dbld_build_terminal(int code)
{
    return code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_COMPLETED ||
           code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_FAILED ||
           code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_CANCELLED ||
           code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_PRECONDITION_FAILED;
}

int dbld_build_started(int code)
{
    return code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_PLANNING ||
           code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_ANALYSIS_COMPLETED ||
           code == DATABUILD__V1__BUILD_REQUEST_STATUS_CODE__BUILD_REQUEST_EXECUTING;
}

int dbld_job_terminal(int code)
{
    return code == DATABUILD__V1__JOB_STATUS__JOB_COMPLETED ||
           code == DATABUILD__V1__JOB_STATUS__JOB_FAILED ||
           code == DATABUILD__V1__JOB_STATUS__JOB_CANCELLED ||
           code == DATABUILD__V1__JOB_STATUS__JOB_SKIPPED;
}

int dbld_partition_intent(int code)
{
    return code == DATABUILD__V1__PARTITION_STATUS__PARTITION_REQUESTED ||
           code == DATABUILD__V1__PARTITION_STATUS__PARTITION_ANALYZED ||
           code == DATABUILD__V1__PARTITION_STATUS__PARTITION_DELEGATED;
}
