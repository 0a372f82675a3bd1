/**
 * Kernel delivery for vipsec targets. A {@link KernelDelivery} opens a TUN device
 * ({@link TunDevice}, through the `koffi` FFI: no compiler, no native build) in the target's
 * network namespace, puts the service addresses behind the DVIPA on it, and routes what the
 * host sends from those addresses back into the device. Plugged into a target stack as its
 * `delivery`, it hands the cleartext packets of the target's connections to the host's kernel
 * and the kernel's replies to the DVIPA's owner: any unmodified TCP or UDP application (an HTTP
 * server, iperf3, a database) serves through IPsec, and its connections survive a takeover.
 *
 * The host needs `/dev/net/tun`, `CAP_NET_ADMIN` (root in the namespace) and `ip` (iproute2).
 *
 * @example
 * ```ts
 * import { DefaultTargetStack } from '@vipsec/core'
 * import { kernelDelivery } from '@vipsec/target-tun'
 *
 * const delivery = kernelDelivery({ addresses: ['10.77.0.10'] })
 * const target = new DefaultTargetStack({ link, delivery }, { node: 'target-1' })
 * await target.start() // opens vipsec0 with 10.77.0.10; `python3 -m http.server` now serves
 * ```
 *
 * @packageDocumentation
 */
export {
  TunDevice,
  TunOpenError,
  encodeIfreq,
  decodeIfreqName,
  type TunDeviceInit,
  type TunCounters
} from './tun-device.js'
export {
  KernelDelivery,
  KernelSetupError,
  kernelDelivery,
  type KernelDeliveryComponents,
  type KernelDeliveryCounters,
  type KernelDeliveryInit,
  type IpRunner,
  type PacketDevice
} from './kernel-delivery.js'
export {
  TcpCoalescer,
  segmentPayload,
  VNET_HDR_LEN,
  type CoalesceCounters
} from './tcp-coalesce.js'
