// Test doubles for the parts that have no adapter in this package's dependencies. Each one
// records when it was started and stopped, so that the lifecycle order can be checked.
import { Subject } from 'rxjs'
import type { Startable } from '@vipsec/interface'

/** A startable double that logs its lifecycle into a shared journal. */
export class RecordingPart implements Startable {
  private started = false
  readonly events = new Subject<never>()
  readonly events$ = this.events.asObservable()

  constructor(
    readonly name: string,
    private readonly journal: string[],
    readonly dependencies: unknown[] = []
  ) {}

  async start(): Promise<void> {
    if (this.started) return
    this.started = true
    this.journal.push(`start ${this.name}`)
  }

  async stop(): Promise<void> {
    if (!this.started) return
    this.started = false
    this.journal.push(`stop ${this.name}`)
    this.events.complete()
  }

  isStarted(): boolean {
    return this.started
  }
}

/** Doubles for every component a distribution processor needs. */
export function processorDoubles(journal: string[]) {
  return {
    espEngine: { instance: new RecordingPart('esp', journal) },
    ikeServiceFactory: { instance: () => new RecordingPart('ike', journal) },
    failureDetector: { instance: new RecordingPart('detector', journal) },
    clusterLink: { instance: new RecordingPart('link', journal) },
    networkAdapter: { instance: new RecordingPart('network', journal) },
    distributionProcessor: { instance: new RecordingPart('processor', journal) }
  } as never
}
