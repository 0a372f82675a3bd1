// Mocha root setup: the decorator metadata polyfill that InversifyJS needs, loaded once.
import 'reflect-metadata'
