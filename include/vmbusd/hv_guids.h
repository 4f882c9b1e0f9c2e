/* SPDX-License-Identifier: MIT */
/*
 * Class GUIDs (offer interface types) of the VMBus devices vmbusd, its tools
 * and its tests name, defined once.  A guest binds its driver by this GUID,
 * so each value is fixed by the guest's driver, not by vmbusd.
 *
 * Text in the canonical form, for vsp_guid_parse() (plugins) or guid_parse().
 * Instance GUIDs are not here: each VSP chooses its own.
 */
#ifndef VMBUSD_HV_GUIDS_H
#define VMBUSD_HV_GUIDS_H

/* Integration services (Linux hv_utils and its daemons) */
#define HV_CLASS_HEARTBEAT "57164f39-9115-4e78-ab55-382f3bd5422d"
#define HV_CLASS_SHUTDOWN  "0e0b6031-5213-4934-818b-38d90ced39db"
#define HV_CLASS_TIMESYNC  "9527e630-d0ae-497b-adce-e80ab0175caf"
#define HV_CLASS_KVP       "a9a0f4e7-5a45-4d96-b827-8a841e8c03e6"
#define HV_CLASS_VSS       "35fa2e29-ea23-4236-96ae-3a6ebacba440"
#define HV_CLASS_FCOPY     "34d14be3-dee4-41c8-9ae7-6b174977c192"

/* Storage and network (Linux hv_storvsc, hv_netvsc) */
#define HV_CLASS_SCSI   "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f"
#define HV_CLASS_NETVSC "f8615163-df3e-46c5-913f-f2d2f965ed0e"

/* vmbusd's echo test device (src/vsp/echo.c): a class no guest driver binds
 * to, used by the simulator, the benchmark and vmbus-simguest. */
#define HV_CLASS_ECHO "8f2c1a3e-5b7d-4e19-a6c0-3d9e4b2f7a18"

#endif
